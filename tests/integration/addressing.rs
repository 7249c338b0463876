//! `realize SRC DST` with local paths and `HOST:DIR[/SUBPATH]`, hosts named
//! in the client configuration, and `realize ls`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use crate::harness::*;

/// A daemon `nas` serving `photos` and `docs`, and a client configuration
/// naming it.
struct Nas {
    keys: Keys,
    photos: TempDir,
    docs: TempDir,
    daemon: Daemon,
    config: PathBuf,
}

impl Nas {
    /// Starts `nas`; its `[hosts.nas]` entry expects `cert_of`'s certificate.
    fn start(cert_of: &str) -> Self {
        let keys = Keys::generate(&["laptop", "nas", "impostor"]);
        let (photos, docs) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let daemon = Daemon::start(
            &keys,
            "nas",
            &[("photos", photos.path()), ("docs", docs.path())],
            &["laptop"],
        );
        let config = client_config(&keys, &[("nas", &daemon.addr(), cert_of)]);
        Self {
            keys,
            photos,
            docs,
            daemon,
            config,
        }
    }

    /// Runs `realize` with the client configuration and `args`.
    fn realize(&self, args: &[&str]) -> Output {
        realize()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `realize ls` with the client configuration and `args`.
    fn ls(&self, args: &[&str]) -> Output {
        realize()
            .arg("ls")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }
}

/// A client configuration in `keys`'s folder: the key and certificate of
/// `laptop`, and `[hosts.NAME]` at `addr` presenting `cert`'s certificate.
fn client_config(keys: &Keys, hosts: &[(&str, &str, &str)]) -> PathBuf {
    let mut toml = String::from("key = \"laptop.key\"\ncert = \"laptop.crt\"\n");
    for (name, addr, cert) in hosts {
        toml.push_str(&format!(
            "[hosts.{name}]\naddr = \"{addr}\"\ncert = \"{cert}.crt\"\n"
        ));
    }
    let path = keys.dir.path().join("client.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn src_dst_moves_both_ways_with_a_host_named_in_the_client_config() {
    let nas = Nas::start("nas");
    let local = TempDir::new().unwrap();
    make_tree(local.path());
    let tree = snapshot(local.path());

    assert_success(&nas.realize(&[arg(local.path()), "nas:photos"]));
    assert_eq!(snapshot(nas.photos.path()), tree);
    assert!(is_empty_dir(local.path()));

    // REALIZE_CONFIG names the client config as --config does.
    let back = local.path().join("back");
    let out = realize()
        .args(["nas:photos", arg(&back)])
        .env("REALIZE_CONFIG", &nas.config)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(snapshot(&back), tree);
    assert!(is_empty_dir(nas.photos.path()));
}

#[test]
fn a_subpath_moves_one_file_or_one_subtree_and_the_rest_stays() {
    let nas = Nas::start("nas");
    make_tree(nas.photos.path());
    let before = snapshot(nas.photos.path());
    let local = TempDir::new().unwrap();

    assert_success(&nas.realize(&["nas:photos/a/b", arg(local.path())]));
    let moved: BTreeMap<String, String> = before
        .iter()
        .filter(|(path, _)| path.starts_with("a/b/"))
        .map(|(p, h)| (p.clone(), h.clone()))
        .collect();
    assert_eq!(snapshot(local.path()), moved, "a/b lands at a/b");
    assert!(nas.photos.path().join("a/sibling.bin").exists());

    assert_success(&nas.realize(&["nas:photos/top.txt", arg(local.path())]));
    assert_eq!(snapshot(local.path())["top.txt"], before["top.txt"]);
    let left: BTreeMap<String, String> = before
        .into_iter()
        .filter(|(path, _)| !path.starts_with("a/b/") && path != "top.txt")
        .collect();
    assert_eq!(snapshot(nas.photos.path()), left, "the rest stays");

    // Towards the daemon, a local side stands for the directory's root.
    write_file(local.path(), "2024/x.jpg", b"x");
    write_file(local.path(), "2025/y.jpg", b"y");
    assert_success(&nas.realize(&[arg(local.path()), "nas:photos/2024"]));
    assert_eq!(
        std::fs::read(nas.photos.path().join("2024/x.jpg")).unwrap(),
        b"x"
    );
    assert!(local.path().join("2025/y.jpg").exists());
    assert!(!nas.photos.path().join("2025").exists());

    let out = nas.realize(&["nas:photos/nowhere", arg(local.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nowhere does not exist in the source directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_local_path_with_a_colon_is_local() {
    let work = TempDir::new().unwrap();
    write_file(work.path(), "a:b/file.txt", b"local");
    let out = realize()
        .current_dir(work.path())
        .args(["./a:b", "./c:d"])
        .env("XDG_CONFIG_HOME", work.path())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        std::fs::read(work.path().join("c:d/file.txt")).unwrap(),
        b"local"
    );
    assert!(!work.path().join("a:b/file.txt").exists());
}

#[test]
fn a_named_host_presenting_another_certificate_is_refused() {
    let nas = Nas::start("impostor");
    write_file(nas.photos.path(), "kept.jpg", b"kept");
    let local = TempDir::new().unwrap();
    let out = nas.realize(&["nas:photos", arg(local.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[hosts.nas] cert"),
        "the refusal names the entry: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&nas.keys.fingerprint("impostor")));
    assert!(nas.photos.path().join("kept.jpg").exists());
    assert!(is_empty_dir(local.path()));
    let ls = nas.ls(&["nas"]);
    assert_eq!(ls.status.code(), Some(1));
    assert_eq!(stdout(&ls), "");
}

#[test]
fn ls_lists_directory_ids_and_files_with_sizes() {
    let nas = Nas::start("nas");
    write_file(nas.photos.path(), "2024/a.jpg", &[1; 1000]);
    write_file(nas.photos.path(), "2024/b.jpg", b"");
    write_file(nas.photos.path(), "top.txt", b"top");
    let out = nas.ls(&["nas"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "docs\nphotos\n");

    let out = nas.ls(&["nas:photos/2024"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "          1000  2024/a.jpg\n             0  2024/b.jpg\n"
    );

    let out = nas.ls(&["nas:photos", "--json"]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["dir"], "photos");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[2]["path"], "top.txt");
    assert_eq!(files[2]["size"], 3);
    assert_eq!(files[2]["partial"], false);

    // An address with --peer works without [hosts].
    let peer = nas.keys.cert("nas");
    let out = realize()
        .args(["ls", &nas.daemon.addr(), "--peer", arg(&peer)])
        .args(nas.keys.identity_args("laptop"))
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout(&out), "docs\nphotos\n");
    assert!(is_empty_dir(nas.docs.path()));
}

#[test]
fn bad_addresses_are_usage_errors_that_change_nothing() {
    let nas = Nas::start("nas");
    make_tree(nas.photos.path());
    let before = snapshot(nas.photos.path());
    let local = TempDir::new().unwrap();
    let dst = local.path().join("dst");
    let port = nas.daemon.addr.port().to_string();
    let bad = [
        "nas:".to_string(),
        format!("127.0.0.1:{port}"),
        "[::1:photos".into(),
        "nas:photos/../etc".into(),
        "nas:99999:photos".into(),
        "nas:pho tos".into(),
        "no-such-host.invalid:photos".into(),
    ];
    for src in &bad {
        let out = nas.realize(&[src, arg(&dst), "--peers", arg(&nas.keys.cert("nas"))]);
        assert_eq!(out.status.code(), Some(2), "{src}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
    let out = nas.realize(&["nas:photos", "nas:photos"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("the same directory"));
    let out = nas.realize(&["nas:photos", arg(&dst), "--directory-id", "docs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(snapshot(nas.photos.path()), before);
    assert!(!dst.exists());
}

#[test]
fn a_daemon_listening_on_both_stacks_is_reached_by_every_address_of_a_name() {
    let keys = Keys::generate(&["laptop", "nas"]);
    let photos = TempDir::new().unwrap();
    write_file(photos.path(), "a.jpg", b"a");
    write_file(photos.path(), "b.jpg", b"b");
    let config = keys.dir.path().join("nas.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"[::]:0\"\nkey = \"nas.key\"\ncert = \"nas.crt\"\n[dirs]\nphotos = {:?}\n\
             [peers]\nlaptop = \"laptop.crt\"\n",
            arg(photos.path())
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_config(&config);
    let port = daemon.addr.port();
    let local = TempDir::new().unwrap();
    for (name, addr, file) in [
        ("v4", format!("127.0.0.1:{port}"), "a.jpg"),
        ("v6", format!("[::1]:{port}"), "b.jpg"),
    ] {
        let client = client_config(&keys, &[(name, &addr, "nas")]);
        let out = realize()
            .arg("--config")
            .arg(&client)
            .args([&format!("{name}:photos/{file}"), arg(local.path())])
            .output()
            .unwrap();
        assert_success(&out);
        assert!(local.path().join(file).exists(), "{name}");
    }
    // `localhost` may resolve to ::1 and 127.0.0.1: whichever comes first
    // answers.
    let client = client_config(&keys, &[("nas", &format!("localhost:{port}"), "nas")]);
    let out = realize()
        .args(["ls", "nas", "--config", arg(&client)])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout(&out), "photos\n");
}

/// Runs `realize` with the client configuration `config` and `args`.
fn realize_with(config: &Path, args: &[&str]) -> Output {
    realize()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_relay_moves_into_a_directory_of_another_id() {
    let keys = Keys::generate(&["laptop", "alpha", "beta"]);
    let (photos, archive) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    make_tree(photos.path());
    let tree = snapshot(photos.path());
    let alpha = Daemon::start(&keys, "alpha", &[("photos", photos.path())], &["laptop"]);
    let beta = Daemon::start(&keys, "beta", &[("archive", archive.path())], &["laptop"]);
    let config = client_config(
        &keys,
        &[
            ("alpha", &alpha.addr(), "alpha"),
            ("beta", &beta.addr(), "beta"),
        ],
    );
    assert_success(&realize_with(&config, &["alpha:photos", "beta:archive"]));
    assert_eq!(snapshot(archive.path()), tree);
    assert!(is_empty_dir(photos.path()));
}

#[test]
fn one_daemon_moves_between_two_of_its_directories() {
    let nas = Nas::start("nas");
    make_tree(nas.photos.path());
    let tree = snapshot(nas.photos.path());
    assert_success(&nas.realize(&["nas:photos/a", "nas:docs"]));
    let moved: BTreeMap<String, String> = tree
        .iter()
        .filter(|(path, _)| path.starts_with("a/"))
        .map(|(p, h)| (p.clone(), h.clone()))
        .collect();
    assert_eq!(snapshot(nas.docs.path()), moved, "a lands at a in docs");
    assert!(nas.photos.path().join("top.txt").exists());
}

#[test]
fn two_directories_of_which_one_holds_the_other_are_refused() {
    let keys = Keys::generate(&["laptop", "nas"]);
    let photos = TempDir::new().unwrap();
    make_tree(photos.path());
    let before = snapshot(photos.path());
    let inner = photos.path().join("a");
    let daemon = Daemon::start(
        &keys,
        "nas",
        &[("photos", photos.path()), ("inner", &inner)],
        &["laptop"],
    );
    let config = client_config(&keys, &[("nas", &daemon.addr(), "nas")]);
    for (src, dst) in [("nas:photos", "nas:inner"), ("nas:inner", "nas:photos")] {
        let out = realize_with(&config, &[src, dst]);
        assert_eq!(out.status.code(), Some(2), "{src} {dst}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("one contains the other"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(snapshot(photos.path()), before);
}

#[test]
fn an_address_flag_takes_a_host_named_in_the_client_config() {
    let nas = Nas::start("nas");
    make_tree(nas.photos.path());
    let tree = snapshot(nas.photos.path());
    let local = TempDir::new().unwrap();
    let args = [
        "--src-addr",
        "nas",
        "--directory-id",
        "photos",
        "--dst-path",
    ];
    assert_success(&nas.realize(&[&args[..], &[arg(local.path())]].concat()));
    assert_eq!(snapshot(local.path()), tree);

    assert_success(&nas.realize(&[
        "--src-path",
        arg(local.path()),
        "--dst-addr",
        "nas",
        "--directory-id",
        "docs",
    ]));
    assert_eq!(snapshot(nas.docs.path()), tree);
}

#[test]
fn an_address_flag_naming_a_host_accepts_only_its_certificate() {
    let nas = Nas::start("impostor");
    write_file(nas.photos.path(), "kept.jpg", b"kept");
    let local = TempDir::new().unwrap();
    let out = nas.realize(&[
        "--src-addr",
        "nas",
        "--directory-id",
        "photos",
        "--dst-path",
        arg(local.path()),
        "--peers",
        arg(&nas.keys.cert("nas")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[hosts.nas] cert"),
        "{}",
        stderr(&out)
    );
    assert!(nas.photos.path().join("kept.jpg").exists());
    assert!(is_empty_dir(local.path()));
}

#[test]
fn a_missing_subpath_creates_no_destination() {
    let nas = Nas::start("nas");
    make_tree(nas.photos.path());
    let local = TempDir::new().unwrap();
    let dst = local.path().join("new/deeper");
    let out = nas.realize(&["nas:photos/nowhere", arg(&dst)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nowhere does not exist in the source directory"),
        "{}",
        stderr(&out)
    );
    assert!(is_empty_dir(local.path()), "{:?}", paths(local.path()));
}

#[test]
fn a_destination_inside_the_source_is_refused_before_it_is_made() {
    let work = TempDir::new().unwrap();
    make_tree(work.path());
    let before = snapshot(work.path());
    let inside = work.path().join("new");
    let out = realize()
        .args([arg(work.path()), arg(&inside)])
        .env("XDG_CONFIG_HOME", work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("one contains the other"),
        "{}",
        stderr(&out)
    );
    assert!(!inside.exists());
    assert_eq!(snapshot(work.path()), before);
}
