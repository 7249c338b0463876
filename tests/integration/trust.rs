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
    let args = to_daemon(&keys, src.path(), &daemon, "d", "stranger", "daemon");
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
    args.extend(keys.client_args("client", "other-daemon"));
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

/// Two daemons the client trusts, each serving its own empty folder, and a
/// source with one file.
struct TwoDaemons {
    keys: Keys,
    src: TempDir,
    dst_a: TempDir,
    a: Daemon,
    _b: Daemon,
    _dst_b: TempDir,
}

impl TwoDaemons {
    fn start() -> Self {
        let keys = Keys::generate(&["client", "daemon-a", "daemon-b"]);
        let (src, dst_a, dst_b) = (
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        );
        write_file(src.path(), "f", b"data");
        let a = Daemon::start(&keys, "daemon-a", &[("d", dst_a.path())], &["client"]);
        let b = Daemon::start(&keys, "daemon-b", &[("d", dst_b.path())], &["client"]);
        Self {
            keys,
            src,
            dst_a,
            a,
            _b: b,
            _dst_b: dst_b,
        }
    }

    /// Moves the source to daemon A with `trust` flags after the identity.
    fn move_to_a(&self, trust: &[&str]) -> std::process::Output {
        realize()
            .args(["--src-path", self.src.path().to_str().unwrap()])
            .args(["--dst-addr", &self.a.addr(), "--directory-id", "d"])
            .args(self.keys.identity_args("client"))
            .args(trust)
            .output()
            .unwrap()
    }

    fn assert_nothing_moved(&self) {
        assert_eq!(std::fs::read(self.src.path().join("f")).unwrap(), b"data");
        assert!(is_empty_dir(self.dst_a.path()));
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_side_accepts_only_the_daemon_it_names() {
    let s = TwoDaemons::start();
    let both = s.keys.peers_file(&["daemon-a", "daemon-b"]);
    let (a_crt, b_crt) = (s.keys.cert("daemon-a"), s.keys.cert("daemon-b"));

    // A peers file of both binds no side: refused before connecting.
    let out = s.move_to_a(&["--peers", path(&both)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "realize: --peers {} holds 2 certificates; name the one the daemon at {} must \
             present with --dst-peer FILE\n",
            both.display(),
            s.a.addr()
        )
    );
    s.assert_nothing_moved();
    assert!(!s.a.log().contains("connection accepted"), "{}", s.a.log());

    // Daemon A answers where B is expected: refused, although A is trusted.
    let out = s.move_to_a(&["--peers", path(&both), "--dst-peer", path(&b_crt)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!(
            "realize: refusing the daemon at {}: it presented certificate {}, but --dst-peer {} \
             holds {}; check the address, and name that daemon's certificate instead only if \
             you trust that host\n",
            s.a.addr(),
            s.keys.fingerprint("daemon-a"),
            b_crt.display(),
            s.keys.fingerprint("daemon-b"),
        )
    );
    s.assert_nothing_moved();

    // Named by its own flag, daemon A gets the file.
    let out = s.move_to_a(&["--peers", path(&both), "--dst-peer", path(&a_crt)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(s.dst_a.path().join("f")).unwrap(), b"data");
    assert!(is_empty_dir(s.src.path()));
}

#[test]
fn a_client_config_with_several_daemons_binds_no_side() {
    let s = TwoDaemons::start();
    let both = s.keys.peers_file(&["daemon-a", "daemon-b"]);
    let config = s.keys.dir.path().join("client.toml");
    std::fs::write(&config, format!("peers = {:?}\n", path(&both))).unwrap();
    let out = s.move_to_a(&["--config", path(&config)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "realize: the client config's peers file {} holds 2 certificates; name the one the \
             daemon at {} must present with --dst-peer FILE\n",
            both.display(),
            s.a.addr()
        )
    );
    s.assert_nothing_moved();
    let a_crt = s.keys.cert("daemon-a");
    let out = s.move_to_a(&["--config", path(&config), "--dst-peer", path(&a_crt)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(is_empty_dir(s.src.path()));
}

#[test]
fn a_relay_names_both_daemons_it_cannot_bind() {
    let s = TwoDaemons::start();
    let both = s.keys.peers_file(&["daemon-a", "daemon-b"]);
    let out = realize()
        .args(["--src-addr", "127.0.0.1:9", "--dst-addr", &s.a.addr()])
        .args(["--directory-id", "d", "--peers", path(&both)])
        // Nothing answers at the source: were it not refused, it would retry.
        .args(["--max-duration", "20s"])
        .args(s.keys.identity_args("client"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.ends_with(&format!(
            "holds 2 certificates; name the one the daemon at 127.0.0.1:9 must present with \
             --src-peer FILE and the one the daemon at {} must present with --dst-peer FILE\n",
            s.a.addr()
        )),
        "{err}"
    );
    // A per-side flag is for a remote side only.
    let out = realize()
        .args(["--src-path", path(s.src.path()), "--src-peer", path(&both)])
        .args(["--dst-addr", &s.a.addr(), "--directory-id", "d"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'--src-path <PATH>' cannot be used with '--src-peer <FILE>'"),
        "{err}"
    );
    s.assert_nothing_moved();
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

#[test]
fn identity_and_daemon_certificate_from_the_environment_alone() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "f", b"data");
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let move_to_daemon = || {
        let mut command = realize();
        command.args([
            "--src-path",
            src.path().to_str().unwrap(),
            "--dst-addr",
            &daemon.addr(),
            "--directory-id",
            "d",
        ]);
        // No client configuration file to fall back on.
        command.env("XDG_CONFIG_HOME", keys.dir.path().join("none"));
        command
    };
    let out = move_to_daemon().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "no identity yet: {}",
        stderr(&out)
    );
    let out = move_to_daemon()
        .env("REALIZE_KEY", keys.key("client"))
        .env("REALIZE_CERT", keys.cert("client"))
        .env("REALIZE_PEERS", keys.cert("daemon"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("f")).unwrap(), b"data");
    assert!(!src.path().join("f").exists());
}
