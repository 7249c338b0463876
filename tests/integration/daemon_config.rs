//! `realized --check-config` and the default configuration path.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::harness::*;

/// Runs `realized` with `args` and returns its output.
fn realized(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realized"))
        .args(args)
        .output()
        .expect("realized runs")
}

/// Every key of `[limits]`, as `docs/operations.md` lists them.
const LIMITS: [&str; 13] = [
    "connections",
    "connections_per_peer",
    "handshakes",
    "unvalidated_handshakes",
    "requests_per_peer",
    "stall_timeout",
    "hello_timeout",
    "streams_per_connection",
    "read_buffer_per_connection",
    "listings",
    "listings_per_peer",
    "listing_depth",
    "partial_max_age",
];

#[test]
fn check_config_prints_the_effective_configuration_without_binding() {
    let keys = Keys::generate(&["daemon", "client"]);
    let served = TempDir::new().unwrap();
    // The port the daemon would listen on is taken: checking binds nothing.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = keys.dir.path().join("realized.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{}\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n\
             [dirs]\nphotos = {:?}\n[peers]\nhosta = \"client.crt\"\n\
             [limits]\nconnections_per_peer = 3\nstall_timeout = \"1m\"\n",
            taken.local_addr().unwrap(),
            served.path().display().to_string()
        ),
    )
    .unwrap();
    let out = realized(&["--check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    for key in LIMITS {
        assert!(
            report.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "[limits] {key} missing:\n{report}"
        );
    }
    for line in [
        "connections_per_peer = 3",
        "stall_timeout = \"1m\"",
        "connections = 256",
        &format!("photos = {:?}", served.path().display().to_string()),
        &format!("listen = \"{}\"", taken.local_addr().unwrap()),
    ] {
        assert!(report.lines().any(|l| l == line), "{line:?}:\n{report}");
    }
    let peer = report.lines().find(|l| l.starts_with("hosta = ")).unwrap();
    assert!(peer.ends_with(&keys.fingerprint("client")), "{report}");
    assert!(report.contains(&keys.fingerprint("daemon")), "{report}");
    // What it prints is a configuration the daemon reads back.
    let effective = keys.dir.path().join("effective.toml");
    std::fs::write(&effective, &report).unwrap();
    let again = realized(&["--check-config", "--config", effective.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

#[test]
fn check_config_reports_what_the_daemon_would_refuse_and_exits_2() {
    let keys = Keys::generate(&["daemon", "client"]);
    let config = keys.dir.path().join("realized.toml");
    let base = "key = \"daemon.key\"\ncert = \"daemon.crt\"\n";
    let cases = [
        (
            format!("{base}[dirs]\nphotos = \"/nonexistent/photos\"\n[peers]\na = \"client.crt\"\n"),
            "/nonexistent/photos",
        ),
        (
            format!("{base}[dirs]\nphotos = \"/tmp\"\n[peers]\na = \"missing.crt\"\n"),
            "missing.crt",
        ),
        (
            format!("{base}[dirs]\nphotos = \"/tmp\"\n[peers]\na = \"client.crt\"\n[limits]\nconnections = 0\n"),
            "[limits] connections",
        ),
    ];
    for (text, named) in cases {
        std::fs::write(&config, &text).unwrap();
        let out = realized(&["--check-config", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{named}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
}

#[test]
fn without_config_the_daemon_reads_etc_realize_realized_toml() {
    let default = "/etc/realize/realized.toml";
    if Path::new(default).exists() {
        eprintln!("{default} exists on this host; its absence cannot be tested here");
        return;
    }
    for args in [&[][..], &["--check-config"][..]] {
        let out = realized(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{default}: no such file")) && err.contains("--config"),
            "{args:?}: {err}"
        );
    }
    let help = String::from_utf8_lossy(&realized(&["--help"]).stdout).into_owned();
    assert!(help.contains(default), "{help}");
}
